#!/bin/sh
# Make systemd see the (new) unit. Nothing is enabled or started: that is the
# operator's call (`systemctl enable --now ccboot`), since a run changes the system.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
fi
