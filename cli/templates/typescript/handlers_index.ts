// The handlers the worker serves, each found by the `callable` of a template's step.
// `tasker generate handler` adds its handler here, above the `tasker:` marker lines.

import type { Handlers } from 'tasker-core';

{{imports}}// tasker:imports

export const HANDLERS: Handlers = [
{{entries}}  // tasker:handlers
];
