import { invalidation } from './plugin.js'

export type {
  InvalidationOptions,
  InvalidationStats,
  InvalidationTargets,
  RouteInvalidateConfig,
  TargetList,
} from './types.js'
export { invalidation }
export default invalidation
