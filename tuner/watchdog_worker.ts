/**
 * The watchdog's worker thread (see watchdog.ts): its timers run while the tuner's thread is
 * blocked waiting for the GPU. When a guarded wait passes its deadline, it appends the trials
 * at stake to the log as failed, tells the user, and tells the main thread.
 *
 * @module
 */
import type { WatchdogMessage } from "./watchdog.ts";

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<WatchdogMessage>) => void) | null;
  postMessage(message: unknown): void;
};

let state: Int32Array | undefined;
let logPath = "";
let pid = 0;

scope.onmessage = (e) => {
  const message = e.data;
  if (message.kind === "init") {
    state = new Int32Array(message.state);
    logPath = message.logPath;
    pid = message.pid;
    return;
  }
  const { seq, deadline, what, seconds, lines } = message;
  setTimeout(() => {
    // Claim the wait; if the main thread disarmed it first, it finished in time.
    if (!state || Atomics.compareExchange(state, 0, seq, -seq) !== seq) return;
    try {
      const dir = logPath.replace(/[/\\][^/\\]*$/, "");
      if (dir !== logPath && dir !== "") Deno.mkdirSync(dir, { recursive: true });
      Deno.writeTextFileSync(logPath, lines, { append: true });
      console.error(
        `\n${what} has run past its time limit of ${seconds} s: recorded as failed in ${logPath}. ` +
          `Waiting for the GPU to finish it; if it never does, stop the tuner (kill -9 ${pid}) ` +
          `and rerun the same command: it resumes past this trial.`,
      );
    } catch (e) {
      console.error(`\nwatchdog: cannot record the timed-out trial in ${logPath}: ${e}`);
    }
    scope.postMessage({ seq });
  }, Math.max(0, deadline - Date.now()));
};
