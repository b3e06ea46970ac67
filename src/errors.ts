/**
 * Errors a user can cause. Each carries a literal code to switch on and a message that is one sentence
 * naming the cause and the fix. main.ts prints the message (never a stack) and exits with `exitCode`.
 */
export type UserErrorCode =
  | "config" // the file is unreadable or invalid
  | "usage" // bad command line
  | "port_in_use"
  | "permission" // missing privilege or capability
  | "unsupported" // kernel or platform lacks a feature
  | "interface"; // network interface missing or unusable

export class UserError extends Error {
  constructor(
    readonly code: UserErrorCode,
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "UserError";
  }
}
