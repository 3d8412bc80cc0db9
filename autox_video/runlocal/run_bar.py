"""`autox-video run` on a terminal: one bar over the job's epochs (or its search's trials), best top-1 beside it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autox_video import terminal

ENDED = ("succeeded", "pruned", "failed")


class RunBar:
    """Follows the child trainer's progress.json (or a search's trials.jsonl); draws nothing off a terminal."""

    def __init__(self, name: str, *, searching: bool, enabled: bool = True) -> None:
        self.drawn = enabled and terminal.draw_bars()
        self.bar: Any = terminal.bar(None, name, "trial" if searching else "epoch", enabled=self.drawn)

    def _move(self, done: Any, total: Any, best: Any) -> None:
        if isinstance(total, int) and total != self.bar.total:
            self.bar.reset(total=total)
        if isinstance(done, int) and done != self.bar.n:
            self.bar.update(done - self.bar.n)
        if isinstance(best, int | float):
            self.bar.set_postfix(best_top1=f"{best:.4f}", refresh=False)
        self.bar.refresh()

    def training(self, progress: Mapping[str, Any] | None) -> None:
        """Epochs done of the total, from the trainer's progress.json."""
        p = progress or {}
        self._move(p.get("epoch"), p.get("total_epochs"), p.get("best_top1"))

    def search(self, rows: Sequence[Mapping[str, Any]], trials: int) -> None:
        """Trials ended of the most, from the search's ledger rows."""
        scores = [r["best_top1"] for r in rows if isinstance(r.get("best_top1"), int | float)]
        ended = sum(r.get("state") in ENDED for r in rows)
        self._move(ended, trials, max(scores) if scores else None)

    def close(self) -> None:
        """Leave the bar as it last was."""
        self.bar.close()
