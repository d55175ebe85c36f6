#!/usr/bin/env node
// Entry point of the `arca` command; the TypeScript sources are compiled to dist/ by `npm run build` (run by `prepare`).
import { main } from "../dist/cli/main.js";

process.exitCode = await main(process.argv.slice(2));
