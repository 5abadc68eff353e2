"""Recipe change by the PLC (option ``recipe_change``), transport-free (docs/plc.md, "Options").

The PLC writes ``recipe`` and raises ``recipe_change``; the appliance answers with
``recipe_change_done`` (the recipe exists and no inspection is running) or
``recipe_change_failed``, and shows the recipe in ``recipe_active``. Both answers drop when the
PLC drops ``recipe_change``. With the option on, triggers run ``recipe_active``; the ``recipe``
register is read only at a recipe change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .handshake import Inputs


@dataclass
class RecipeSwitch:
    active: int
    exists: Callable[[int], bool]
    done: bool = False
    failed: bool = False
    _last: bool = False

    def update(self, inputs: Inputs, busy: bool) -> bool:
        """Feed the PLC's inputs; True when the active recipe changed."""
        rising = inputs.recipe_change and not self._last
        self._last = inputs.recipe_change
        changed = False
        if rising:
            ok = not busy and self.exists(inputs.recipe)
            changed = ok and inputs.recipe != self.active
            if ok:
                self.active = inputs.recipe
            self.done, self.failed = ok, not ok
        elif not inputs.recipe_change:
            self.done = self.failed = False
        return changed

    def outputs(self) -> dict[str, int | bool]:
        return {"recipe_active": self.active, "recipe_change_done": self.done, "recipe_change_failed": self.failed}
