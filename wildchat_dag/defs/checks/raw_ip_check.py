"""Asset checks shared by several steps."""

from __future__ import annotations

from datetime import datetime

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from wildchat_dag.defs.checks.raw_ip_scan import scan_raw_ips
from wildchat_dag.partitions import LOOKAHEAD_DAYS
from wildchat_dag.resources.warehouse import Warehouse

RAW_IP_CHECK = "no_raw_ip_addresses"


def raw_ip_check_spec(asset: str, why: str) -> AssetCheckSpec:
    """The blocking check that no table outside the raw layer writes out a client IP."""
    return AssetCheckSpec(
        RAW_IP_CHECK,
        asset=asset,
        blocking=True,
        description=(
            "No table outside the raw layer (for this day, and unpartitioned ones whole) "
            "writes out a client IP address of the raw logs, in any text column (nested ones "
            "too) or notation: the day's clients in every notation, integers included; any "
            f"other day's client wherever something IP-shaped is written. {why} "
            "Blocking: a failure stops everything downstream of this run."
        ),
    )


def raw_ip_check(warehouse: Warehouse, day: datetime, asset: str) -> AssetCheckResult:
    scan = scan_raw_ips(warehouse.query, day, lookahead_days=LOOKAHEAD_DAYS)
    findings, stats = scan.findings, scan.stats
    return AssetCheckResult(
        check_name=RAW_IP_CHECK,
        asset_key=asset,
        passed=not findings,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "tables_with_raw_ips": MetadataValue.json(sorted(findings)),
            "rows_with_raw_ips": sum(f.height for f in findings.values()),
            # Where to look, never the addresses themselves.
            "sample_conversation_ids": MetadataValue.json(
                {
                    t: f["conversation_id"].drop_nulls().head(10).to_list()
                    for t, f in findings.items()
                }
            ),
            "tables_searched": MetadataValue.json(stats["tables_searched"]),
            **{k: v for k, v in stats.items() if k != "tables_searched"},
        },
    )
