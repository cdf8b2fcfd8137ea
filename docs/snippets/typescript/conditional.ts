// A decision step and the convergence step after its branches (TypeScript).
//
//   - name: routing_decision
//     type: decision
//     handler: {callable: approvals.RoutingDecision}
//     dependencies: [validate_request]
//   - {name: auto_approve,     handler: {callable: approvals.AutoApprove},     dependencies: [routing_decision]}
//   - {name: manager_approval, handler: {callable: approvals.ManagerApproval}, dependencies: [routing_decision]}
//   - {name: finance_review,   handler: {callable: approvals.FinanceReview},   dependencies: [routing_decision]}
//   - name: finalize_approval
//     type: deferred_convergence
//     handler: {callable: approvals.FinalizeApproval}
//     dependencies: [auto_approve, manager_approval, finance_review]
import { defineHandler, StepResult } from 'tasker-core';

type Request = { amount: number };

/** Creates only the approvals the amount needs; the other branches never exist. */
export const routingDecision = defineHandler<Request>('approvals.RoutingDecision', (ctx) => {
  const { amount } = ctx.input;
  if (amount <= 0) return StepResult.noBranches({ amount }); // finalize_approval still runs
  if (amount < 1_000) return StepResult.decision(['auto_approve'], { amount });
  if (amount < 5_000) return StepResult.decision(['manager_approval'], { amount });
  return StepResult.decision(['manager_approval', 'finance_review'], { amount }); // in parallel
});

/** Runs once the branches that were created are done, and gets exactly their results. */
export const finalizeApproval = defineHandler('approvals.FinalizeApproval', (ctx) => ({
  approvedBy: Object.keys(ctx.dependencyResults).sort(),
}));

// Unit test, no database (tasker-core/testing):
//
//   const result = await runHandler(routingDecision, { input: { amount: 7_500 } });
//   assert.deepEqual(chosenSteps(result), ['manager_approval', 'finance_review']);
