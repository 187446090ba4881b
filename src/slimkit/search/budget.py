"""The time budget of ``slimkit auto``: it bounds the whole command, not the search alone.

After the search come re-timing the finalists and the final run, which replays the chosen
trial: it reuses the models the trial trained (:meth:`~slimkit.search.trials.TrialRunner.replayed`)
and applies again only the steps that wrote files (quantization), then measures each step. So
the search stops once what is left of the budget would not cover one more trial (the longest so
far) plus that final work: at most a trial's time less what it spent applying steps the replay
reuses, which each trial records as :data:`REUSABLE_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The final run replays one trial (at most the longest one's share that is not reused);
# re-timing and the reports take a fraction of one more.
_FINAL_SHARE = 1.5

# The trial attribute holding the seconds a trial spent applying steps the final run reuses.
REUSABLE_S = "reusable_s"


@dataclass
class Deadline:
    """``budget_s`` seconds from when it was made (``clock`` is injectable for tests)."""

    budget_s: float
    clock: Callable[[], float] = time.monotonic
    longest_trial_s: float = 0.0
    longest_replay_s: float = 0.0  # the most any trial so far would cost the final run
    _start: float = field(default=0.0, init=False)
    _mark: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._start = self._mark = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self._start

    def search_left(self) -> float:
        """Seconds the search may still start trials in (never below zero)."""
        reserve = _FINAL_SHARE * self.longest_replay_s
        return max(0.0, self.budget_s - self.elapsed() - reserve)

    def searching(self) -> None:
        """The search starts now: the first trial's length counts from here."""
        self._mark = self.clock()

    def after_trial(self, study: Any, trial: Any) -> None:
        """Optuna callback: remember the trial's length; stop when the next one cannot fit."""
        now = self.clock()
        length = now - self._mark
        reusable = float(trial.user_attrs.get(REUSABLE_S, 0.0))
        self.longest_trial_s = max(self.longest_trial_s, length)
        self.longest_replay_s = max(self.longest_replay_s, length - reusable)
        self._mark = now
        if self.search_left() < self.longest_trial_s:
            study.stop()
