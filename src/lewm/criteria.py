"""The two success criteria every evaluation reports (docs/design.md §1.4, "Criteria").

The authors' criterion is each world's `success()`: the goal is reached at any step, once.
It is the headline, as in the paper. The strict criterion is each world's
`strict_success()` held for `strict_hold` consecutive steps, so that it cannot be met by a
pose touched in passing or a quantity the authors' predicate ignores (a Cube at the wrong
yaw, a Push-T block pushed through its pose). An episode runs until both are decided or its
budget is spent, so running on after the authors' success changes neither that success nor
the step it came at.
"""

from __future__ import annotations

from dataclasses import dataclass

CRITERIA = ("authors", "strict")


@dataclass
class Outcome:
    """One episode under both criteria; `see` it after every step (and at the start)."""

    success: bool = False
    """the authors' criterion: reached at some step"""
    success_step: int | None = None
    """the first step it was reached at (0: before acting)"""
    strict_success: bool = False
    """the strict criterion: held for the world's `strict_hold` steps in a row"""
    strict_step: int | None = None
    """the step its hold was complete at"""
    held: int = 0
    """steps in a row the strict predicate has held so far"""

    def see(self, env, step: int) -> None:
        """Judge `env`'s state after `step` env steps."""
        if not self.success and env.success():
            self.success, self.success_step = True, step
        if not self.strict_success:
            self.held = self.held + 1 if env.strict_success() else 0
            if self.held >= env.strict_hold:
                self.strict_success, self.strict_step = True, step

    @property
    def decided(self) -> bool:
        """Both criteria met: nothing left to learn from running on."""
        return self.success and self.strict_success
