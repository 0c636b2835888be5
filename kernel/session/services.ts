/**
 * Long-lived helpers of the kernel (the MLX bridge client, the ANE worker client) are created
 * lazily the first time a magic needs them and disposed when the kernel shuts down or restarts.
 * The session knows nothing about what they are: each client module exports its own key.
 */
export interface Disposable {
  dispose(): Promise<void> | void;
}

export interface ServiceKey<T extends Disposable> {
  readonly name: string;
  create(): T;
}

export class Services {
  private readonly live = new Map<string, Disposable>();

  get<T extends Disposable>(key: ServiceKey<T>): T {
    let service = this.live.get(key.name) as T | undefined;
    if (!service) {
      service = key.create();
      this.live.set(key.name, service);
    }
    return service;
  }

  /** The service if it was ever created, without creating it. */
  peek<T extends Disposable>(key: ServiceKey<T>): T | undefined {
    return this.live.get(key.name) as T | undefined;
  }

  async disposeAll(): Promise<void> {
    const services = [...this.live.values()];
    this.live.clear();
    await Promise.allSettled(services.map((s) => s.dispose()));
  }
}
