"""maildrill's harness: scenarios, the run orchestrator, load, faults, analysis, verdicts, reports."""
