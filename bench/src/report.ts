/** One line of the results table. */
export interface Row {
  scenario: string
  subject: string
  figure: string
  target?: string
  /** Measured against the target, e.g. '1.34x' (higher is better) or '0.21x of the bound' (lower is better). */
  vsTarget?: string
  verdict?: 'PASS' | 'MISS'
}

export function verdict(pass: boolean): 'PASS' | 'MISS' {
  return pass ? 'PASS' : 'MISS'
}

export function ratio(value: number): string {
  return `${value.toFixed(2)}x`
}

export function markdownTable(rows: readonly Row[]): string {
  const header = ['scenario', 'subject', 'measured', 'target', 'measured / target', 'result']
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`]
  for (const row of rows) {
    const cells = [
      row.scenario,
      row.subject,
      row.figure,
      row.target ?? '',
      row.vsTarget ?? '',
      row.verdict ?? '',
    ]
    lines.push(`| ${cells.map((cell) => cell.replace(/\|/g, '\\|')).join(' | ')} |`)
  }
  return lines.join('\n')
}
