#!/usr/bin/env node
// The `arca` command; `npm run build` (run by `prepare` on install) compiles src/ to dist/.
import "../dist/cli/run.js";
