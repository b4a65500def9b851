#!/usr/bin/env bash
# Quick start: install, build and start the demo API with its embedded defaults (SQLite, L1 only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
pnpm build
node scripts/start-demo.mjs
