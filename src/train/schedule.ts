// Learning rate per optimizer step: linear warmup over the warmup epochs, then cosine down to eta_min.
export interface Schedule {
  baseLr: number;
  etaMin: number;
  warmupSteps: number;
  totalSteps: number;
}

export function lrAt(step: number, s: Schedule): number {
  if (step < s.warmupSteps) return (s.baseLr * (step + 1)) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const t = Math.min(1, (step - s.warmupSteps) / span);
  return s.etaMin + ((s.baseLr - s.etaMin) * (1 + Math.cos(Math.PI * t))) / 2;
}
