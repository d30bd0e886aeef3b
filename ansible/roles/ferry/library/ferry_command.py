#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0, like ferry.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ferry_command
short_description: Run one ferry command with its settings in the environment
description:
  - Runs the ferry binary with I(argv) and adds I(environment) and I(secret_environment) to the
    environment of the ferry process only.
  - Ansible's C(environment) keyword writes variables into the C(/bin/sh -c) command that starts
    a module, where the node's process list shows them while the module runs. Module arguments
    travel inside the module payload instead, so passwords never appear in a process argument.
  - Returns the exit code, both outputs, and the JSON document ferry printed on standard output
    with C(--json). It never reports a change and never fails because of ferry's exit code: the
    role's tasks decide both from the document.
  - Does not run in check mode unless the task sets C(check_mode: false); the role then passes
    C(--dry-run).
options:
  argv:
    description: The command: the path of the ferry binary, then its arguments. No shell is used.
    type: list
    elements: str
    required: true
  environment:
    description: Variables to add to ferry's environment, such as C(REGISTRY_URL).
    type: dict
    default: {}
  secret_environment:
    description:
      - Variables to add to ferry's environment whose values Ansible must never show, such as
        C(REGISTRY_PASSWORD) or a proxy URL with a password.
      - Ansible replaces their values with asterisks in any output of this module.
    type: dict
    default: {}
"""

RETURN = r"""
rc:
  description: ferry's exit code (0 success, 1 an image or check failed, 2 nothing attempted).
  type: int
stdout:
  description: Standard output.
  type: str
stderr:
  description: Standard error.
  type: str
document:
  description: The JSON document on standard output, or null when the output is not JSON.
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule


def parse_document(stdout):
    """Return the JSON object ferry printed with --json, or None."""
    text = stdout.strip()
    if not text.startswith("{"):
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str", required=True),
            environment=dict(type="dict", default={}),
            secret_environment=dict(type="dict", default={}, no_log=True),
        ),
        supports_check_mode=False,
    )
    argv = module.params["argv"]
    if not argv:
        module.fail_json(msg="argv is empty: give the path of the ferry binary and its arguments")

    variables = {}
    for source in ("environment", "secret_environment"):
        for name, value in module.params[source].items():
            variables[str(name)] = "" if value is None else str(value)

    rc, stdout, stderr = module.run_command(
        argv,
        environ_update=variables,
        expand_user_and_vars=False,
        check_rc=False,
    )
    module.exit_json(
        changed=False,
        cmd=argv,
        rc=rc,
        stdout=stdout,
        stderr=stderr,
        document=parse_document(stdout),
    )


if __name__ == "__main__":
    main()
