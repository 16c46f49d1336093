"""Command-line options shared by every job and tool: where settings come from, and overrides."""

from __future__ import annotations

import argparse
import sys

from gridflow.settings import Settings, SettingsError, load_settings


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings")
    group.add_argument("--conf-dir", help="configuration folder (default: $GRIDFLOW_CONF_DIR or flink-conf/)")
    group.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="extra YAML settings merged on top, e.g. the stack's settings.yaml (repeatable)",
    )
    group.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        dest="overrides",
        help="override one setting, e.g. --set stream.window_s=120 (repeatable)",
    )


def job_argument_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings_arguments(parser)
    parser.add_argument(
        "--stop-offsets",
        type=parse_offsets,
        metavar="P=OFFSET,...",
        help="bounded run: stop each partition of the input topic at this offset (exclusive)",
    )
    parser.add_argument(
        "--stop-at",
        type=parse_topic_offsets,
        action="append",
        default=[],
        metavar="TOPIC:P=OFFSET,...",
        help="bounded run of a job with several inputs: stop TOPIC's partitions at these offsets (repeat per topic)",
    )
    return parser


def parse_offsets(text: str) -> dict[int, int]:
    offsets = {}
    for part in text.split(","):
        partition, sep, offset = part.partition("=")
        if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected PARTITION=OFFSET pairs like 0=120,1=80, got {part!r}")
        offsets[int(partition)] = int(offset)
    return offsets


def parse_topic_offsets(text: str) -> tuple[str, dict[int, int]]:
    topic, sep, offsets = text.partition(":")
    if not sep or not topic:
        raise argparse.ArgumentTypeError(f"expected TOPIC:PARTITION=OFFSET,... like readings:0=120,1=80, got {text!r}")
    return topic, parse_offsets(offsets)


def format_topic_offsets(topic: str, offsets: dict[int, int]) -> str:
    """The ``--stop-at`` argument for ``offsets`` of ``topic`` (inverse of :func:`parse_topic_offsets`)."""
    return f"{topic}:" + ",".join(f"{p}={o}" for p, o in sorted(offsets.items()))


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the parsed options; a bad value exits with status 2 and a message naming the key."""
    try:
        return load_settings(args.conf_dir, args.config, args.overrides)
    except SettingsError as error:
        print(f"gridflow: {error}", file=sys.stderr)
        raise SystemExit(2) from None
