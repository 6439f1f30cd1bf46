"""Stop ansible-playbook dead after the Nth successful task of one module, like a laptop closed mid-run.

Test-only. Enabled with ANSIBLE_CALLBACKS_ENABLED=interrupt_after and configured by
INTERRUPT_AFTER_ACTION (a module's full name) and INTERRUPT_AFTER_COUNT (default 1).
"""

from __future__ import annotations

import os

from ansible.plugins.callback import CallbackBase

INTERRUPTED_EXIT_CODE = 97


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "interrupt_after"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._action = os.environ.get("INTERRUPT_AFTER_ACTION", "")
        self._left = int(os.environ.get("INTERRUPT_AFTER_COUNT", "1"))

    def v2_runner_on_ok(self, result) -> None:
        if not self._action or result._task.action != self._action:
            return
        self._left -= 1
        if self._left <= 0:
            os._exit(INTERRUPTED_EXIT_CODE)
