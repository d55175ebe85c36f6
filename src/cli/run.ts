import { main } from "./main.js";

// Executable entry (tests run it through tsx; bin/arca.js imports the compiled copy).
process.exitCode = await main(process.argv.slice(2));
