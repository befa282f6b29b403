/** Public API of the resolver. */
export { resolve, buildPlan, type Request, type Target } from './resolve.js';
export { planToJson, type Plan, type PlanStep, type PlanProblem, type StepAction } from './plan.js';
export { dependencyOrder } from './order.js';
