"""The study as last read while its store answered, so that a database that stays down past
the retries (`autoaccel.study.StoreLost`) still ends the search with its frontier so far.

The truth stays in the store: the next run of the same command continues the study there and
writes the frontier again. What this keeps is only what the search had already read (the
finished trials and the study's attributes), copied into an in-memory Optuna study that the
ordinary finish (`autoaccel.search_finish.finish`) reads like the real one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from autoaccel.study import StoreLost


class StudySnapshot:
    """Finished trials and study attributes as of the last `take`."""

    def __init__(self) -> None:
        self.trials: list[optuna.trial.FrozenTrial] = []
        self.attrs: dict[str, Any] = {}
        self.directions: list[Any] = []

    def take(self, study: optuna.Study) -> None:
        """Called between trials: a few cheap reads (finished trials come from Optuna's
        cache). A read that fails leaves the last snapshot as it was."""
        try:
            trials = study.get_trials(deepcopy=False)
            attrs = study.user_attrs
            directions = study.directions
        except Exception:
            return
        self.trials = [t for t in trials if t.state.is_finished()]
        self.attrs, self.directions = attrs, directions

    def as_study(self, name: str) -> optuna.Study:
        """An in-memory study holding the snapshot (nothing in it is written anywhere)."""
        import optuna

        study = optuna.create_study(
            study_name=name,
            directions=self.directions,
            storage=optuna.storages.InMemoryStorage(),
        )
        for key, value in self.attrs.items():
            study.set_user_attr(key, value)
        study.add_trials(self.trials)
        return study


def finish_without_store(search: Any, name: str, lost: StoreLost) -> StoreLost:
    """Write the frontier, recommendation and report of the trials finished before the
    study store stopped answering, as after any search (marked FAILED, with why in
    `stopped_by`); returns the one-line error to end with, saying where they are. Nothing
    is written when nothing was measured yet (no baseline read)."""
    from autoaccel.search_finish import finish
    from autoaccel.study import StoreLost

    snapshot: StudySnapshot = search.snapshot
    if "baseline" not in snapshot.attrs:
        return lost
    n = len(snapshot.trials)
    search.stopped_by = (
        f"{str(lost).split(';')[0]}; this frontier is of the {n} trial{'s' if n != 1 else ''} "
        "finished before, as read then; the same command continues once the store is back"
    )
    search.emit("warning", search.stopped_by)  # console, recommendation.json and report
    search.study = snapshot.as_study(name)
    result = finish(search, name, "FAILED")
    return StoreLost(f"{lost}; the frontier so far is in {result.out_dir}")
