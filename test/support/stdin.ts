/** The lines of this process's stdin, trimmed, as they arrive: commands from the test driving a helper process. */
export async function* stdinLines(): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of Bun.stdin.stream()) {
    buf += new TextDecoder().decode(chunk);
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
    }
  }
}
