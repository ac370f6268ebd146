# Packer template (HCL2, amazon-ebs builder): an AMI with ccboot baked in.
# The build instance runs ccboot-bake.sh, which downloads ccboot, verifies its
# SHA-256 with the same lines as the UserData, and runs `ccboot bake`.
# Instances launched from the AMI only run ccboot's instance steps at boot
# (CloudFormation: set the template's BakedAmiId parameter to the AMI).
#
#   packer build -var ccboot_url=https://.../ccboot_v1.2.0_linux_arm64 \
#                -var ccboot_sha256=<from SHA256SUMS> packaging/packer/ccboot.pkr.hcl
#
# Written for Packer 1.6 and later (the tests validate it with Debian's 1.6).

variable "region" {
  type        = string
  default     = "us-east-1"
  description = "Region to build the AMI in."
}

variable "architecture" {
  type        = string
  default     = "arm64"
  description = "arm64 (Graviton) or x86_64; ccboot_url must be the binary for it."
}

variable "instance_type" {
  type        = string
  default     = "t4g.small"
  description = "Build instance type; an x86_64 type (e.g. t3.small) for architecture x86_64."
}

variable "source_ami_name" {
  type        = string
  default     = "al2023-ami-2023.*-kernel-*"
  description = "Name pattern of the Amazon-owned base AMI (newest match)."
}

variable "ccboot_url" {
  type        = string
  description = "https:// or s3:// URL of the ccboot release binary for the architecture."
}

variable "ccboot_sha256" {
  type        = string
  description = "SHA-256 of that binary (its line in SHA256SUMS); the build fails on a mismatch."
}

variable "ccboot_config" {
  type        = string
  default     = ""
  description = "Optional image config (/etc/ccboot/ccboot.conf): [packages], [claude-code], [ccboot] user."
}

locals {
  stamp = regex_replace(timestamp(), "[- TZ:]", "")
}

source "amazon-ebs" "ccboot" {
  region                 = var.region
  skip_region_validation = true
  instance_type          = var.instance_type
  ssh_username           = "ec2-user"
  ami_name               = "ccboot-${var.architecture}-${local.stamp}"
  ami_description        = "Claude Code on Amazon Bedrock, baked by ccboot bake"

  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = var.architecture
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["amazon"]
    most_recent = true
  }

  tags = {
    Name   = "ccboot-${var.architecture}-${local.stamp}"
    ccboot = "baked"
  }
}

build {
  sources = ["source.amazon-ebs.ccboot"]

  provisioner "shell" {
    script          = "${path.root}/ccboot-bake.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "CCBOOT_URL=${var.ccboot_url}",
      "CCBOOT_SHA256=${var.ccboot_sha256}",
      "CCBOOT_CONFIG=${var.ccboot_config}",
    ]
  }
}
