#!/usr/bin/env bash
# Installs the pinned pnpm (package.json "packageManager") if missing, then the locked dependencies.
# Needs only Node.js and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
pnpm_version=$(node -p "require('./package.json').packageManager.split('@')[1]")
if [ "$(pnpm --version 2>/dev/null)" != "$pnpm_version" ]; then
  npm install --global --no-fund --no-audit "pnpm@$pnpm_version"
fi
pnpm install --frozen-lockfile
