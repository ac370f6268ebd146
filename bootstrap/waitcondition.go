package bootstrap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// waitConditionSignal is the body CloudFormation expects on a
// WaitConditionHandle's pre-signed URL.
type waitConditionSignal struct {
	Status   string `json:"Status"` // SUCCESS or FAILURE
	Reason   string `json:"Reason"`
	UniqueID string `json:"UniqueId"`
	Data     string `json:"Data"`
}

// SignalWaitCondition reports the run's outcome to [ccboot]
// wait_condition_url, if set, so a stack completes only when the instance is
// really ready. The URL is pre-signed: no credentials are involved. It is
// sent once per instance: later boots' runs would only hit an expired URL.
func (s *Session) SignalWaitCondition(ctx context.Context, r *Report) error {
	url := s.Env.Config.WaitConditionURL
	if url == "" || r.WaitConditionSignalled != "" {
		return nil
	}
	sig := waitConditionSignal{Status: "SUCCESS", Reason: Summary(r), UniqueID: r.InstanceID, Data: Summary(r)}
	if sig.UniqueID == "" {
		sig.UniqueID = "ccboot"
	}
	if r.Failed() {
		sig.Status = "FAILURE"
		for _, st := range r.Steps {
			if st.Error != "" {
				sig.Reason = st.Name + ": " + st.Error
				break
			}
		}
	}
	body, _ := json.Marshal(sig)
	var lastErr error
	for attempt := 1; attempt <= 5; attempt++ {
		lastErr = putSignal(ctx, url, body)
		if lastErr == nil {
			s.Env.Log.Info("signalled wait condition", zap.String("status", sig.Status))
			r.WaitConditionSignalled = sig.Status
			return SaveState(s.Env.Sys, *r)
		}
		s.Env.Log.Warn("wait condition signal failed", zap.Int("attempt", attempt), zap.Error(lastErr))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	return fmt.Errorf("signal wait condition: %w (the stack will time out; check [ccboot] wait_condition_url)", lastErr)
}

func putSignal(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	// The pre-signed URL is signed for an empty Content-Type.
	req.Header.Set("Content-Type", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT returned %s", resp.Status)
	}
	return nil
}
