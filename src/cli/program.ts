/** The whole command tree: every command file of the table registers its commands. */
import { Command } from 'commander';
import { COMMAND_FILES, withGlobalOptions } from './command-table.js';
import { version } from './version.js';

export { version };

export async function buildProgram(): Promise<Command> {
  const program = withGlobalOptions(
    new Command('cpm')
      .description('container-based package manager and rootfs assembler')
      .version(version(), '-V, --version'),
  );
  const registrars = await Promise.all(COMMAND_FILES.map((f) => f.load()));
  for (const register of registrars) register(program);
  return program;
}
