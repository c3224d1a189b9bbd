import type { Measurement, Metric } from "./scenarios/scenario.ts";

/** One run of one column: its numbers, or why it failed. */
export type RunRecord =
  | { readonly run: number; readonly measurement: Measurement; readonly details: unknown }
  | { readonly run: number; readonly error: string };

export interface ScenarioResult {
  readonly id: string;
  readonly title: string;
  readonly description: string;
  readonly reference: string;
  readonly metrics: readonly Metric[];
  readonly columns: readonly string[];
  /** Column → its runs in order. */
  readonly runs: Record<string, RunRecord[]>;
}

/** Everything a benchmark run produced: written as JSON to bench/results/, rendered as Markdown. */
export interface BenchResults {
  readonly startedAt: string;
  finishedAt: string;
  readonly command: string;
  /** The raw JSON, relative to the repository root. */
  readonly rawFile: string;
  readonly mode: "quick" | "full";
  readonly runs: number;
  readonly machine: Readonly<Record<string, string | number>>;
  readonly versions: Readonly<Record<string, string>>;
  readonly notes: string[];
  readonly scenarios: ScenarioResult[];
  readonly errors: string[];
  /** The 1-minute load average at the start and the end: well above 2 on this 2-core machine, other work ran too. */
  loadAverage?: { readonly start: number; end: number };
}

/** "load average 1.02 at the start, 3.40 at the end", or "" when not recorded. */
function loadText(results: BenchResults): string {
  const load = results.loadAverage;
  return load ? `load average ${load.start.toFixed(2)} at the start, ${load.end.toFixed(2)} at the end` : "";
}

/** The median of the values (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function numbers(records: readonly RunRecord[] | undefined, key: string): number[] {
  const values: number[] = [];
  for (const record of records ?? []) {
    if (!("measurement" in record)) continue;
    const value = record.measurement[key];
    if (typeof value === "number" && Number.isFinite(value)) values.push(value);
  }
  return values;
}

function texts(records: readonly RunRecord[] | undefined, key: string): string[] {
  const values: string[] = [];
  for (const record of records ?? []) {
    if (!("measurement" in record)) continue;
    const value = record.measurement[key];
    if (value !== null && value !== undefined && !values.includes(String(value))) values.push(String(value));
  }
  return values;
}

/** A number in the metric's unit, short. */
export function formatValue(value: number, format: Metric["format"]): string {
  const sig = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));
  switch (format) {
    case "bytes": {
      const units = ["B", "KiB", "MiB", "GiB"];
      let n = value;
      let unit = 0;
      while (Math.abs(n) >= 1024 && unit < units.length - 1) {
        n /= 1024;
        unit++;
      }
      return `${sig(n)} ${units[unit]}`;
    }
    case "rate":
      return Math.abs(value) >= 1e6
        ? `${sig(value / 1e6)}M`
        : Math.abs(value) >= 1e3
        ? `${sig(value / 1e3)}k`
        : sig(value);
    case "ms":
      return `${sig(value)} ms`;
    case "s":
      return `${sig(value)} s`;
    case "pct":
      return `${(value * 100).toFixed(0)} %`;
    case "pct3":
      return value === 1 ? "100 %" : `${(Math.floor(value * 100_000) / 1000).toFixed(3)} %`;
    case "int":
      return Math.round(value).toLocaleString("en-US");
    default:
      return sig(value);
  }
}

function cell(result: ScenarioResult, metric: Metric, column: string, runs: number): string {
  const records = result.runs[column];
  if (!records || records.length === 0) return "–";
  const failed = records.filter((r) => "error" in r).length;
  const failNote = failed > 0 ? ` (${failed} failed)` : "";
  if (failed === records.length) return "failed";
  if (metric.format === "text") return (texts(records, metric.key).join(" / ") || "–") + failNote;
  const values = numbers(records, metric.key);
  if (values.length === 0) return "–" + failNote;
  const mid = median(values);
  let text = formatValue(mid, metric.format);
  if (runs > 1 && values.length > 1) {
    text += ` (${formatValue(Math.min(...values), metric.format)}–${formatValue(Math.max(...values), metric.format)})`;
  }
  if (metric.ratio && column !== result.reference) {
    const reference = numbers(result.runs[result.reference], metric.key);
    if (reference.length > 0 && median(reference) !== 0) text += ` ×${(mid / median(reference)).toFixed(2)}`;
  }
  return text + failNote;
}

/** One scenario's section: its heading, description, table and failures. */
function scenarioSection(result: ScenarioResult, runs: number, provenance?: string): string[] {
  const lines = [`## ${result.id}: ${result.title}`, ""];
  if (provenance) lines.push(provenance, "");
  lines.push(result.description, "");
  const columns = result.columns;
  lines.push(`| | ${columns.join(" | ")} |`);
  lines.push(`|---|${columns.map(() => "---").join("|")}|`);
  for (const metric of result.metrics) {
    lines.push(`| ${metric.label} | ${columns.map((c) => cell(result, metric, c, runs)).join(" | ")} |`);
  }
  const failures = columns.flatMap((c) =>
    (result.runs[c] ?? []).flatMap((r) => ("error" in r ? [`${c} run ${r.run}: ${r.error.split("\n")[0]}`] : []))
  );
  if (failures.length > 0) {
    lines.push("", "Failures:", "");
    for (const failure of failures) lines.push(`- ${failure}`);
  }
  lines.push("");
  return lines;
}

/**
 * `--update`: put this run's scenario sections into an existing report, replacing the sections of the same ids and
 * adding new ones after the section of the scenario before them in `order`; everything else stays. Each section says
 * which run produced it (the report's header names the run of the rest), with that run's notes.
 */
export function updateMarkdown(existing: string, results: BenchResults, order: readonly string[]): string {
  let markdown = existing.endsWith("\n") ? existing : `${existing}\n`;
  const runs = results.runs > 1 ? `${results.runs} runs` : "1 run";
  for (const result of results.scenarios) {
    const provenance = [
      `Measured by \`${results.command}\` (${results.mode} mode, ${runs} per cell), ${results.startedAt} –`,
      `${results.finishedAt} (${Object.entries(results.versions).map(([k, v]) => `${k} ${v}`).join(", ")};`,
      `${loadText(results) || "load not recorded"}, above ${results.machine.nproc} means other processes shared`,
      "the cores; other sections may come from another run: compare ratios within a section); raw numbers in",
      `\`${results.rawFile}\` on the machine that ran it.`,
    ].join(" ");
    const notes = results.notes.filter((n) => n.startsWith(`${result.id} `));
    const section = scenarioSection(result, results.runs, provenance);
    if (notes.length > 0) section.splice(section.length - 1, 0, "", "Notes:", "", ...notes.map((n) => `- ${n}`));
    const text = `${section.join("\n")}\n`;
    const at = sectionRange(markdown, result.id);
    if (at) {
      markdown = markdown.slice(0, at.start) + text + markdown.slice(at.end);
      continue;
    }
    // After the nearest earlier scenario present, else before the notes and errors, else at the end.
    const before = order.slice(0, Math.max(0, order.indexOf(result.id))).reverse()
      .map((id) => sectionRange(markdown, id)).find((range) => range !== undefined);
    const tail = /^## (Notes|Errors)$/m.exec(markdown);
    const insertAt = before?.end ?? tail?.index ?? markdown.length;
    markdown = markdown.slice(0, insertAt) + text + markdown.slice(insertAt);
  }
  return markdown;
}

/** Where the section `## <id>: …` starts and where the next `## ` heading (or the end) is. */
function sectionRange(markdown: string, id: string): { start: number; end: number } | undefined {
  const start = markdown.search(new RegExp(`^## ${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `, "m"));
  if (start < 0) return undefined;
  const next = markdown.slice(start + 3).search(/^## /m);
  return { start, end: next < 0 ? markdown.length : start + 3 + next };
}

/** BENCHMARKS.md: the machine, the versions, the command, then one table per scenario. */
export function renderMarkdown(results: BenchResults): string {
  const lines: string[] = [];
  const machine = results.machine;
  lines.push("# Benchmarks", "");
  const runs = results.runs > 1 ? `${results.runs} runs` : "1 run";
  lines.push(
    [
      `Produced by \`${results.command}\` (${results.mode} mode, ${runs} per cell),`,
      `${results.startedAt} – ${results.finishedAt}; raw numbers in \`${results.rawFile}\` on the machine that ran it`,
      "(`bench/results/` is kept out of git: this file is the record).",
      `Every cell is the median${results.runs > 1 ? " with min–max over the runs" : ""}; ×N is the ratio to the`,
      "scenario's reference column (bun-limit; in S4 bun-limit making the same three calls; in S2H Shoal with history",
      "off; S6 has no ratios). Benchmarks assert nothing: a slow result is a finding, not a failure.",
    ].join(" "),
    "",
  );
  lines.push(
    "Run it with `npm run bench` (`bun run bench/run.ts`: every scenario, 3 runs, about 45 minutes; it rewrites this " +
      "file) or `npm run bench:quick` (`--quick`: small sizes, 1 run, well under a minute, to check that everything " +
      "works; its tables go to `bench/results/`; `npm test` runs it too, as the `bench-quick` suite). " +
      "`--scenarios S2,S5` and `--peers bun-limit,shoal-bun` select; " +
      "`--runs N` sets the runs. The harness is described in `bench/README.md`.",
    "",
  );
  lines.push("## Machine and versions", "");
  lines.push(`- CPU: ${machine.cpuModel}, ${machine.nproc} cores; memory ${machine.memory}; kernel ${machine.kernel}`);
  lines.push(
    `- Pinning: the server under test on CPU ${machine.serverCpu}; redis-server, the load-generator workers, the publisher ` +
      `and the runner on CPU ${machine.loadCpu} (\`taskset\`). Server CPU is utime+stime from \`/proc/<pid>/stat\`, memory ` +
      "is VmRSS from `/proc/<pid>/status`.",
  );
  lines.push(`- Versions: ${Object.entries(results.versions).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  if (results.loadAverage) {
    lines.push(
      `- Machine load (1-minute ${loadText(results)}): above ${machine.nproc} means other processes shared the ` +
        "cores and add noise.",
    );
  }
  lines.push("");

  for (const result of results.scenarios) lines.push(...scenarioSection(result, results.runs));
  if (results.notes.length > 0) {
    lines.push("## Notes", "");
    for (const note of results.notes) lines.push(`- ${note}`);
    lines.push("");
  }
  if (results.errors.length > 0) {
    lines.push("## Errors", "");
    for (const error of results.errors) lines.push(`- ${error.split("\n")[0]}`);
    lines.push("");
  }
  return lines.join("\n");
}
