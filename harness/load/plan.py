"""The load plan a drill hands to Locust, and the pure dispatcher that turns it into timed requests.

No `import locust` here: the locustfile (harness/load/locustfile.py) is the only module that does,
and it runs only in the Locust subprocess. Everything decided here is a pure function of the plan, the
worker's index and what the dispatcher was told, so it is unit-tested without Locust.
"""

from __future__ import annotations

import heapq
import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maildrill.harness.load.shapes import arrivals
from maildrill.harness.scenario.models import ClassSpec, LoadSpec, ShapeSpec
from pydantic import TypeAdapter

PLAN_ENV = "MAILDRILL_LOAD_PLAN"
_SHAPE = TypeAdapter(ShapeSpec)


@dataclass(frozen=True)
class LoadPlan:
    """Everything the Locust subprocess needs, in run time (time_scale already applied)."""

    load: LoadSpec
    duration_s: float
    seed: int
    sut_url: str | None  # base URL for HTTP classes
    smtp_host: str | None  # default target of SMTP classes (the SUT)
    smtp_port: int | None
    go_file: str  # the harness writes {"t0_s": ...} here when every worker is ready
    mta_events: str  # the fake MTAs' event file (the patience model reads deliveries from it)

    def to_json(self) -> str:
        d = {"load": self.load.model_dump(mode="json", by_alias=True, exclude_none=True),
             "duration_s": self.duration_s, "seed": self.seed, "sut_url": self.sut_url,
             "smtp_host": self.smtp_host, "smtp_port": self.smtp_port, "go_file": self.go_file,
             "mta_events": self.mta_events}
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> LoadPlan:
        d = json.loads(text)
        return cls(load=LoadSpec.model_validate(d["load"]), duration_s=float(d["duration_s"]), seed=int(d["seed"]),
                   sut_url=d["sut_url"], smtp_host=d["smtp_host"], smtp_port=d["smtp_port"], go_file=d["go_file"],
                   mta_events=d["mta_events"])

    @classmethod
    def read(cls, path: str | Path) -> LoadPlan:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    @property
    def needs_deliveries(self) -> bool:
        return any(c.resend_after_s is not None and c.max_resends > 0 for c in self.load.classes)


@dataclass(frozen=True, order=True)
class Job:
    """One request to make at `due_s` (seconds from the start of the load phase)."""

    due_s: float
    corr: str = field(compare=False)
    cls: ClassSpec = field(compare=False)
    resend: int = field(default=0, compare=False)
    user: str = field(default="", compare=False)


def corr_of(k: int) -> str:
    """The correlation id of the k-th user need (global across workers): u000000, u000001, ..."""
    return f"u{k:06d}"


def pick_class(classes: list[ClassSpec], seed: int, k: int) -> ClassSpec:
    """The class of need k: weighted, and the same for a given seed whichever worker draws it."""
    if len(classes) == 1:
        return classes[0]
    rng = random.Random(f"{seed}:class:{k}")
    return rng.choices(classes, weights=[c.weight for c in classes])[0]


class Dispatcher:
    """Hands out this worker's jobs in due order: first requests (every `count`-th arrival, starting at
    `index`) and the resends of users still waiting (patience model)."""

    def __init__(self, plan: LoadPlan, *, index: int = 0, count: int = 1) -> None:
        if not 0 <= index < count:
            raise ValueError(f"worker index {index} not in [0, {count})")
        self.plan = plan
        self.times = arrivals(plan.load.shape, plan.duration_s)
        self.ks = range(index, len(self.times), count)
        self.next_pos = 0
        self.resends: list[Job] = []
        self.delivered: set[str] = set()
        self.skipped_resends = 0

    def __len__(self) -> int:
        return len(self.ks)

    def mark_delivered(self, corr: str) -> None:
        self.delivered.add(corr)

    def exhausted(self) -> bool:
        return self.next_pos >= len(self.ks) and not self.resends

    def peek_due(self) -> float | None:
        a = self.times[self.ks[self.next_pos]] if self.next_pos < len(self.ks) else None
        r = self.resends[0].due_s if self.resends else None
        if a is None:
            return r
        return a if r is None else min(a, r)

    def take(self) -> Job | None:
        """The earliest job (None when there is none left). Its resend, if the class has patience, is queued."""
        while True:
            a_due = self.times[self.ks[self.next_pos]] if self.next_pos < len(self.ks) else None
            if self.resends and (a_due is None or self.resends[0].due_s < a_due):
                job = heapq.heappop(self.resends)
                if job.corr in self.delivered:  # the user got the code: no resend
                    self.skipped_resends += 1
                    continue
            elif a_due is not None:
                k = self.ks[self.next_pos]
                self.next_pos += 1
                corr = corr_of(k)
                job = Job(a_due, corr, pick_class(self.plan.load.classes, self.plan.seed, k), 0, corr)
            else:
                return None
            cls = job.cls
            if cls.resend_after_s is not None and job.resend < cls.max_resends:
                due = job.due_s + cls.resend_after_s
                if due < self.plan.duration_s:  # users stop asking when the load phase ends
                    heapq.heappush(self.resends, Job(due, job.corr, cls, job.resend + 1, job.user))
            return job


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:  # validated at load; keep braces of anything else as written
        return "{" + key + "}"


def render(template: str, values: dict[str, str]) -> str:
    return string.Formatter().vformat(template, (), _Fields(values))


def render_json(obj: Any, values: dict[str, str]) -> Any:
    """Every string in a JSON template rendered (keys too)."""
    if isinstance(obj, str):
        return render(obj, values)
    if isinstance(obj, list):
        return [render_json(v, values) for v in obj]
    if isinstance(obj, dict):
        return {render(str(k), values): render_json(v, values) for k, v in obj.items()}
    return obj


def template_values(plan: LoadPlan, job: Job) -> dict[str, str]:
    base = {"corr": job.corr, "class": job.cls.name, "resend": str(job.resend), "user": job.user}
    return {**base, "recipient": render(plan.load.recipient, base)}
