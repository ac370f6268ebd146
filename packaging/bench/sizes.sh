#!/usr/bin/env bash
# Binary size: the release build (static, stripped, -trimpath, as dist.sh)
# for linux/arm64 and linux/amd64, and a ladder that shows what each
# dependency costs: tiny programs that link one more piece each, built with
# the same flags, inside this module (same versions as go.mod).
#   sizes.sh OUTDIR  -> OUTDIR/sizes.env (key=value), OUTDIR/ladder.txt
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here/../.."
out=$1
mkdir -p "$out"
env_out=$out/sizes.env
: >"$env_out"
build() { # ARCH OUT PKG
	CGO_ENABLED=0 GOOS=linux GOARCH=$1 GOFLAGS='' go build -trimpath -buildvcs=false -tags nethttpomithttp2 \
		-ldflags "-s -w -buildid=" -o "$2" "$3"
}
for arch in arm64 amd64; do
	build $arch "$out/ccboot-$arch" ./cmd/ccboot
	printf 'size_%s=%s\n' $arch "$(stat -c %s "$out/ccboot-$arch")" >>"$env_out"
done

# The ladder. Each rung adds imports to the one before, and uses them so the
# linker keeps them. "_" keeps the directory out of ./... patterns.
lad=$(mktemp -d "$here/_ladder.XXXXXX")
trap 'rm -rf "$lad"' EXIT
rung() { # NAME IMPORTS BODY (cumulative)
	imports+=" $2"
	body+="$3"$'\n'
	local d=r${#names[@]}
	mkdir -p "$lad/$d"
	{
		echo 'package main'
		echo 'import ('
		for i in $imports; do echo "	\"$i\""; done
		echo ')'
		echo 'var _ = fmt.Sprint'
		echo 'func main() {'
		echo '	var err error'
		echo '	args := os.Args'
		printf '%s' "$body"
		echo '	fmt.Println(err, len(args))'
		echo '}'
	} >"$lad/$d/main.go"
	names+=("$1")
}
imports='' body='' names=()
rung "1 Go runtime + fmt + os" "fmt os" ''
rung "2 + net/http client (crypto/tls; HTTP/2 left out by the nethttpomithttp2 tag)" "net/http" '	if r, e := http.Get(args[0]); e == nil { r.Body.Close() } else { err = e }'
rung "3 + aws-sdk-go-v2 feature/ec2/imds (smithy)" "context github.com/aws/aws-sdk-go-v2/feature/ec2/imds" '	if o, e := imds.New(imds.Options{}).GetMetadata(context.Background(), &imds.GetMetadataInput{Path: args[0]}); e == nil { fmt.Println(o) } else { err = e }'
rung "4 + zap (JSON core)" "go.uber.org/zap go.uber.org/zap/zapcore" '	zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(os.Stdout), zap.InfoLevel)).Info("x", zap.Error(err), zap.Dict("d", zap.Int("a", 1)))'
rung "5 + gopkg.in/ini.v1 (+regexp)" "gopkg.in/ini.v1" '	if f, e := ini.Load([]byte(args[0])); e == nil { fmt.Println(f.Section("a").Key("b").String()) }'
rung "6 + go-systemd daemon, unit" "github.com/coreos/go-systemd/v22/daemon github.com/coreos/go-systemd/v22/unit" '	fmt.Println(daemon.SdNotify(false, args[0])); fmt.Println(unit.DeserializeOptions(os.Stdin))'
rung "7 + encoding/json, os/exec, golang.org/x/sys/unix" "encoding/json os/exec golang.org/x/sys/unix" '	var v map[string]any; _ = json.Unmarshal([]byte(args[0]), &v); b, _ := json.MarshalIndent(v, "", " "); fmt.Println(string(b), exec.Command(args[0]).Run(), unix.Getpid())'
rung "8 + ProtonMail/go-crypto openpgp (armored detached signature check)" "strings github.com/ProtonMail/go-crypto/openpgp" '	if k, e := openpgp.ReadArmoredKeyRing(os.Stdin); e == nil { _, err = openpgp.CheckArmoredDetachedSignature(k, strings.NewReader(args[0]), os.Stdin, nil) }'
prev=0
: >"$out/ladder.txt"
for arch in arm64 amd64; do
	prev=0
	for i in "${!names[@]}"; do
		n=${names[$i]}
		build $arch "$lad/bin" "./$(realpath --relative-to=. "$lad/r$i")"
		s=$(stat -c %s "$lad/bin")
		printf '%s\t%s\t%d\t%+d\n' "$arch" "$n" "$s" "$((s - prev))" >>"$out/ladder.txt"
		prev=$s
	done
	s=$(grep "^size_$arch=" "$env_out" | cut -d= -f2)
	printf '%s\t%s\t%d\t%+d\n' "$arch" "9 ccboot (own code on top of 8)" "$s" "$((s - prev))" >>"$out/ladder.txt"
done
