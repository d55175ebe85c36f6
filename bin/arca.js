#!/usr/bin/env node
// The `arca` command; `npm run build` (run by `prepare` on install) bundles src/ into dist/bundle.
import "../dist/bundle/run.js";
