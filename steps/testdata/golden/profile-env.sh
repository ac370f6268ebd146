# Managed by ccboot; changes are overwritten by `ccboot repair`. Settings: /etc/ccboot/ccboot.conf
export CLAUDE_CODE_USE_BEDROCK='1'
export ANTHROPIC_MODEL='eu.anthropic.claude-sonnet-4-6'
export AWS_REGION='eu-west-1'
export DISABLE_AUTOUPDATER='1'
