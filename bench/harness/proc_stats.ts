import { readFileSync } from "node:fs";

/** Clock ticks per second of `/proc/<pid>/stat` (USER_HZ); 100 on every Linux this runs on. */
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system, all threads) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
  // The command name (field 2) may hold spaces and parentheses: count fields from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "latin1");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** Busy and total jiffies of one CPU since boot, from `/proc/stat`. */
export function cpuTimes(cpu: number): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "latin1").split("\n").find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) throw new Error(`no cpu${cpu} in /proc/stat`);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** TCP states as in `/proc/net/tcp` (include/net/tcp_states.h). */
export const TCP_ESTABLISHED = 1;

/**
 * The state of every IPv4 TCP socket whose local port is `localPort`, keyed by its remote port: on loopback this
 * is the server's end of each client connection, which tells when the server dropped a client that stopped reading.
 */
export function tcpStatesByRemotePort(localPort: number): Map<number, number> {
  const states = new Map<number, number>();
  const lines = readFileSync("/proc/net/tcp", "latin1").split("\n");
  for (let i = 1; i < lines.length; i++) {
    const fields = lines[i].trim().split(/\s+/);
    if (fields.length < 4) continue;
    if (parseInt(fields[1].slice(fields[1].indexOf(":") + 1), 16) !== localPort) continue;
    states.set(parseInt(fields[2].slice(fields[2].indexOf(":") + 1), 16), parseInt(fields[3], 16));
  }
  return states;
}
