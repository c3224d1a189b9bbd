// The Docker image, read from the Dockerfile (no Docker engine runs here): what it sets in the environment and
// how it checks its health. tests/e2e/docker_image.test.ts runs Shoal with that environment.
import assert from "node:assert/strict";
import { test } from "node:test";
import { envOf, execForm, imageFacts, parseDockerfile } from "../support/dockerfile.ts";

test("dockerfile: the reader joins continued lines, skips comments and splits stages", () => {
  const stages = parseDockerfile(
    '# top\nFROM a AS b\nRUN x \\\n  # inside\n  y\nFROM c\nENV A=1 \\\n    B="two words"\nHEALTHCHECK --interval=1s \\\n  CMD ["x", "--y"]\n',
  );
  assert.equal(stages.length, 2);
  assert.deepEqual(stages[0].map((i) => i.keyword), ["FROM", "RUN"]);
  assert.equal(stages[0][1].args.replace(/\s+/g, " "), "x y");
  assert.deepEqual(envOf(stages[1][1].args), { A: "1", B: "two words" });
  assert.deepEqual(envOf("OLD value with spaces"), { OLD: "value with spaces" });
  assert.deepEqual(execForm('["bun", "run"]'), ["bun", "run"]);
  assert.equal(execForm("bun run"), undefined);
});

test("dockerfile: no stage bakes SHOAL_HOST, SHOAL_PORT or SHOAL_PUBLISH_TOKEN; the final one sets SHOAL_DEFAULT_HOST", () => {
  const { stages, env } = imageFacts();
  for (const [index, stage] of stages.entries()) {
    for (const { keyword, args } of stage) {
      if (keyword !== "ENV" && keyword !== "ARG") continue;
      const names = keyword === "ENV" ? Object.keys(envOf(args)) : [args.split("=")[0].trim()];
      for (const name of ["SHOAL_HOST", "SHOAL_PORT", "SHOAL_PUBLISH_TOKEN"]) {
        assert.ok(!names.includes(name), `stage ${index}: ${keyword} ${args} sets ${name}: a mounted config must win`);
      }
    }
  }
  assert.equal(env.SHOAL_DEFAULT_HOST, "0.0.0.0", "a default the config's own ws.host beats");
});

test("dockerfile: the HEALTHCHECK runs the entrypoint with --healthcheck (same runtime, same config resolution)", () => {
  const { entrypoint, healthcheck } = imageFacts();
  assert.deepEqual(entrypoint, ["bun", "run", "main.ts"]);
  assert.ok(healthcheck, "a HEALTHCHECK instruction");
  assert.deepEqual(healthcheck.cmd, [...entrypoint!, "--healthcheck"]);
  const timeout = healthcheck.options.find((o) => o.startsWith("--timeout="));
  assert.ok(timeout === undefined || Number.parseFloat(timeout.slice(10)) > 2, "longer than the check's own 2 s");
});
