# Managed by ccboot; changes are overwritten by `ccboot repair`. Settings: /etc/ccboot/ccboot.conf
export CLAUDE_CODE_USE_BEDROCK='1'
export ANTHROPIC_MODEL='eu.anthropic.claude-sonnet-4-6'
export AWS_REGION='eu-west-1'
export ANTHROPIC_DEFAULT_SONNET_MODEL='eu.anthropic.claude-sonnet-4-6'
export ANTHROPIC_DEFAULT_HAIKU_MODEL='eu.anthropic.claude-haiku-4-5-20251001-v1:0'
export ANTHROPIC_DEFAULT_OPUS_MODEL='eu.anthropic.claude-opus-4-6-v1'
export DISABLE_AUTOUPDATER='1'
export DISABLE_UPDATES='1'
