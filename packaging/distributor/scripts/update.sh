#!/bin/sh
# update.sh of ccboot's SSM Distributor package: AWS-ConfigureAWSPackage
# with installationType "In-place update" runs this one instead of the old
# version's uninstall.sh followed by install.sh. AWS: "Providing an update
# script makes it possible for you to use the In-place update option to
# install a package." (https://docs.aws.amazon.com/systems-manager/latest/userguide/distributor-working-with-packages-create.html)
# ccboot's install is already an in-place update: the binary and the unit
# are replaced atomically and the unit runs once, so nothing is removed
# first and Claude Code keeps working during the run.
set -eu
case $0 in
*/*) here=${0%/*} ;;
*) here=. ;;
esac
exec sh "$here/install.sh"
