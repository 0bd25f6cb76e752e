// What the agent's readers of the API server (the pod watcher, the Node view) share: one loop in the
// background, started once, and stopped by aborting the signal every call and sleep of the loop gets.

export abstract class BackgroundLoop {
  protected stopped = true;
  protected controller = new AbortController();
  private loopDone: Promise<void> | undefined;

  /** Runs until `stopped`; every wait takes `controller.signal`. */
  protected abstract loop(): Promise<void>;

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.controller = new AbortController();
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.controller.abort();
    await this.loopDone;
  }
}
