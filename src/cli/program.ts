/** The whole command tree: every command file of the table registers its commands. */
import { Command } from 'commander';
import { COMMAND_FILES, topProgram } from './command-table.js';
import { version } from './version.js';

export { version };

export async function buildProgram(): Promise<Command> {
  const program = topProgram(Command);
  const registrars = await Promise.all(COMMAND_FILES.map((f) => f.load()));
  for (const register of registrars) register(program);
  return program;
}
