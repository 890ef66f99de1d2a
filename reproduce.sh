#!/usr/bin/env bash
# Regenerate every table and figure of IAC (arXiv 2102.06042) into figures/<tier>/.
# bash reproduce.sh --help lists the tiers and options; the work is done by reproduce.py.
set -euo pipefail
cd "$(dirname "$0")"
exec python reproduce.py "$@"
