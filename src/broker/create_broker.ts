import type { BrokerConfig } from "../config.ts";
import type { Broker } from "./broker.ts";
import { MemoryBroker } from "./memory_broker.ts";
import { RedisBroker } from "./redis_broker.ts";
import { UpstashBroker } from "./upstash_broker.ts";

/** The broker a config names. */
export function createBroker(config: BrokerConfig): Broker {
  switch (config.kind) {
    case "memory":
      return new MemoryBroker();
    case "redis":
    case "redis-cluster":
      return new RedisBroker(config);
    case "upstash":
      return new UpstashBroker(config);
  }
}
