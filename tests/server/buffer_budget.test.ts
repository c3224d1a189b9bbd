import assert from "node:assert/strict";
import { test } from "node:test";
import { BufferBudget, type Budgeted } from "../../src/server/buffer_budget.ts";

class Member implements Budgeted {
  closed = false;
  constructor(readonly name: string, public bytes: number) {}
  measure(): number {
    return this.bytes;
  }
  onOverBudget(): void {
    this.closed = true;
  }
}

test("BufferBudget: under the budget nothing is closed; the total follows the latest measurements", () => {
  const budget = new BufferBudget(1000);
  const a = new Member("a", 300);
  const b = new Member("b", 400);
  budget.record(a, 300);
  budget.record(b, 400);
  budget.record(a, 500);
  assert.equal(budget.total, 900);
  assert.ok(!a.closed && !b.closed);
  budget.remove(a);
  budget.remove(b);
  assert.equal(budget.total, 0, "nothing on record: the refresh timer is stopped (Deno's sanitizer checks)");
});

test("BufferBudget: past the budget the connections furthest behind are closed until it holds", () => {
  const budget = new BufferBudget(1000);
  const members = [new Member("a", 100), new Member("b", 600), new Member("c", 200), new Member("d", 350)];
  for (const m of members.slice(0, 3)) budget.record(m, m.bytes);
  assert.equal(budget.total, 900);
  budget.record(members[3], 350); // 1250: b (600) goes, leaving 650
  assert.deepEqual(members.map((m) => m.closed), [false, true, false, false]);
  assert.equal(budget.total, 650);
  budget.record(members[0], 900); // a 900 + c 200 + d 350 = 1450: a goes, 550 left
  assert.deepEqual(members.map((m) => m.closed), [true, true, false, false]);
  assert.equal(budget.total, 550);
  for (const m of members) budget.remove(m);
});

test("BufferBudget: buffers on record are measured again until they drain", async () => {
  const budget = new BufferBudget(1000);
  const a = new Member("a", 800);
  budget.record(a, 800);
  a.bytes = 0; // the client read everything
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(budget.total, 0);
  const b = new Member("b", 500);
  budget.record(b, 500);
  b.bytes = 1500; // grows while nobody sends: the refresh finds it over budget
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(b.closed, true);
  assert.equal(budget.total, 0);
});
