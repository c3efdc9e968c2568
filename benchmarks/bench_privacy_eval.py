"""Recall and precision of the privacy boundary on the labelled set.

Input: ``wildchat_dag.loggen.pii_cases.build_case_set`` (PII the rules redact, secrets and
client IPs placed by position, script and notation, and decoys the rules must leave alone).

Detection and redaction run the pipeline's way: ``PiiDetector(rules).detect`` (gated, as the
pii_candidates asset runs it), then the rules with frequencies over the set
(``anonymization.redact_batch``) and the raw logs' client IPs, as ``anonymize_day`` passes them.
Unless ``--skip-full``, Presidio on every utterance (``pii_detection_reference.detect_everywhere``)
runs too, and the two must redact every message identically.

A placed value counts as found when none of its original characters survive (it is inside a
placeholder); precision counts the redacted spans that overlap no placed value (decoys
included). Prints markdown tables (recall and precision per entity type, recall per notation,
script, position, role and round, decoys redacted, gated against full) and exits non-zero on any
leak, any decoy redacted, or any difference between gated and full. Cases are named by id;
values are never printed.

    .venv/bin/python benchmarks/bench_privacy_eval.py
    .venv/bin/python benchmarks/bench_privacy_eval.py --seed 3 --skip-full --show 100
"""

from __future__ import annotations

import argparse
import sys
import time

from wildchat_dag.loggen.pii_cases import PUBLIC_FIGURE_CONVERSATIONS, build_case_set
from wildchat_dag_tests.privacy_cases import evaluate, redact_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--public-figure-conversations", type=int, default=PUBLIC_FIGURE_CONVERSATIONS
    )
    parser.add_argument("--skip-full", action="store_true", help="no full-detection comparison")
    parser.add_argument("--show", type=int, default=40, help="failing cases to list")
    args = parser.parse_args()

    started = time.perf_counter()
    cases = build_case_set(args.seed, public_figure_conversations=args.public_figure_conversations)
    built = time.perf_counter() - started
    messages = sum(len(c.messages) for c in cases.conversations)
    characters = sum(len(m["content"]) for c in cases.conversations for m in c.messages)
    print(
        f"# Privacy evaluation, seed {args.seed}\n\n{len(cases.values)} placed values and "
        f"{len(cases.decoys)} decoys in {len(cases.conversations)} conversations "
        f"({messages:,} messages, {characters:,} characters), built in {built:.2f} s\n"
    )
    print(cases.counts_table())
    print()

    gated = redact_cases(cases)
    full = None if args.skip_full else redact_cases(cases, full=True)
    result = evaluate(cases, gated.texts, None if full is None else full.texts)
    print(result.markdown(show=args.show))
    timing = f"gated detection and redaction: {gated.seconds:.1f} s"
    if full is not None:
        timing += f"; full: {full.seconds:.1f} s"
    print(f"\n{timing} (engine loading included)")

    failures = []
    if result.leaks:
        failures.append(f"{len(result.leaks)} placed value(s) leaked")
    if result.decoys_redacted:
        failures.append(f"{len(result.decoys_redacted)} decoy(s) redacted")
    if result.differences:
        failures.append(f"{len(result.differences)} message(s) differ between gated and full")
    if result.alignment_errors:
        failures.append(f"{len(result.alignment_errors)} output(s) could not be aligned")
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("\nOK: no leak, no decoy redacted" + ("" if full is None else ", gated == full"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
