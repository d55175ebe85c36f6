/** Where a command writes; injectable so commands run in-process in tests. */
export interface CommandIO {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export const processIO: CommandIO = { stdout: process.stdout, stderr: process.stderr };
