package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/bootstrap/inventory"
	"github.com/ccboot/ccboot/steps"
)

// writeInventory refreshes the Custom:ccboot inventory file after a run,
// a repair or doctor (bootstrap/inventory). It never changes the command's
// result: a run that converged has converged even when its report cannot
// be filed. A refusal (a link, a folder a user owns) is one line on stderr.
func writeInventory(env *bootstrap.Env, instanceID string, stderr io.Writer) {
	file, changed, err := inventory.Refresh(env.Sys, instanceID, func() (inventory.Facts, error) {
		state, err := bootstrap.LoadState(env.Sys)
		if err != nil {
			return inventory.Facts{}, err
		}
		return inventory.Facts{
			CcbootVersion:     version,
			ClaudeCodeVersion: steps.InstalledClaudeVersion(env),
			TierMode:          env.Config.TierMode,
			Run:               runFacts(state),
		}, nil
	})
	switch {
	case errors.Is(err, inventory.ErrNoInstanceID):
		env.Log.Info("inventory not written", zap.Error(err))
	case err != nil:
		env.Log.Warn("inventory not written", zap.Error(err))
		fmt.Fprintf(stderr, "ccboot: SSM inventory not written: %v\n", err)
	default:
		env.Log.Info("inventory written", zap.String("file", file), zap.Bool("changed", changed))
	}
}

// runFacts is the recorded run as the inventory reports it.
func runFacts(r *bootstrap.Report) inventory.Run {
	if r == nil {
		return inventory.Run{Result: inventory.RunNone}
	}
	run := inventory.Run{Mode: string(r.Mode), Time: r.Finished, FailedSteps: r.FailedSteps()}
	switch {
	case !r.Complete:
		run.Result, run.Time = inventory.RunIncomplete, r.Started
	case r.Failed():
		run.Result = inventory.RunFailed
	default:
		run.Result = inventory.RunOK
	}
	return run
}

// recordDoctor keeps doctor's result for the inventory and refreshes it.
// Only root can: the record and the agent's folder are root's.
func recordDoctor(ctx context.Context, env *bootstrap.Env, results []doctor.Result, stderr io.Writer) {
	if os.Geteuid() != 0 {
		return
	}
	d := inventory.Doctor{Result: inventory.DoctorOK, Time: time.Now().UTC()}
	for _, r := range results {
		if !r.OK && !r.Skipped {
			d.Result = inventory.DoctorFailed
			d.FailedChecks = append(d.FailedChecks, r.Name)
		}
	}
	if err := inventory.SaveDoctor(env.Sys, d); err != nil {
		env.Log.Warn("doctor's result not recorded", zap.Error(err))
		fmt.Fprintf(stderr, "ccboot doctor: result not recorded for the SSM inventory: %v\n", err)
		return
	}
	id, err := env.Meta.InstanceID(ctx)
	if err != nil {
		id = "" // IMDS did not answer: there is no agent folder to name
	}
	writeInventory(env, id, stderr)
}

// inventoryStatus says where the inventory file is, for `ccboot status`:
// its path, or why there is none.
func inventoryStatus(env *bootstrap.Env, r *bootstrap.Report) (file, why string) {
	if r == nil {
		return "", "no run yet"
	}
	file, _, err := inventory.Read(env.Sys, r.InstanceID)
	switch {
	case err == nil:
		return file, ""
	case errors.Is(err, fs.ErrNotExist):
		return "", "not written yet at " + file + "; the next run, repair or doctor (as root) writes it"
	case errors.Is(err, fs.ErrPermission):
		return "", "the SSM agent's folder is root's; run `sudo ccboot status`"
	}
	return "", err.Error()
}

// inventoryLine is status's line for the inventory file.
func inventoryLine(file, why string) string {
	if file != "" {
		return "inventory: " + file + " (" + inventory.TypeName + ", collected by the SSM agent)"
	}
	return bootstrap.Printable("inventory: none (" + why + ")")
}
