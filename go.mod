module github.com/ccboot/ccboot

go 1.26.8

require (
	github.com/aws/aws-sdk-go-v2 v1.48.0
	github.com/aws/aws-sdk-go-v2/feature/ec2/imds v1.20.9
	go.uber.org/zap v1.28.0
)

require (
	github.com/aws/smithy-go v1.28.9 // indirect
	github.com/coreos/go-systemd/v22 v22.7.0 // indirect
	github.com/stretchr/testify v1.11.1 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	gopkg.in/ini.v1 v1.68.0 // indirect
)
