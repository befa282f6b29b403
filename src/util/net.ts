/**
 * Network limits for every registry and HTTP client of the process: how long to wait for a
 * connection, how long a response may stay silent (headers or body), and how long retries of one
 * request may go on in total. Defaults, then cpm.yaml's `network:` (loadConfig calls
 * setNetworkSettings), then the environment (CPM_CONNECT_TIMEOUT, CPM_IDLE_TIMEOUT,
 * CPM_RETRY_BUDGET, in seconds) — docs/config.md.
 */
export interface NetworkSettings {
  connectTimeoutMs: number;
  idleTimeoutMs: number;
  retryBudgetMs: number;
}

export const NETWORK_DEFAULTS: NetworkSettings = {
  connectTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  retryBudgetMs: 120_000,
};

let fromConfig: Partial<NetworkSettings> = {};

export function setNetworkSettings(s: Partial<NetworkSettings>): void {
  fromConfig = { ...s };
}

function envSeconds(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n * 1000 : undefined;
}

/** The settings in force: defaults < cpm.yaml < environment. */
export function networkSettings(): NetworkSettings {
  return {
    connectTimeoutMs:
      envSeconds('CPM_CONNECT_TIMEOUT') ??
      fromConfig.connectTimeoutMs ??
      NETWORK_DEFAULTS.connectTimeoutMs,
    idleTimeoutMs:
      envSeconds('CPM_IDLE_TIMEOUT') ?? fromConfig.idleTimeoutMs ?? NETWORK_DEFAULTS.idleTimeoutMs,
    retryBudgetMs:
      envSeconds('CPM_RETRY_BUDGET') ?? fromConfig.retryBudgetMs ?? NETWORK_DEFAULTS.retryBudgetMs,
  };
}
