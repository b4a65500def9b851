/** A product record of about 1 KB as JSON: what a cached API read typically holds. */
export interface Product {
  id: number
  sku: string
  name: string
  description: string
  price: { amount: number; currency: string }
  stock: number
  tags: string[]
  attributes: Record<string, string>
  images: string[]
  rating: { average: number; count: number }
  related: number[]
  updatedAt: string
}

export function product(id: number): Product {
  return {
    id,
    sku: `SKU-${String(id).padStart(8, '0')}`,
    name: `Stainless steel insulated bottle ${id}`,
    description:
      'Double-walled vacuum insulation keeps drinks cold for 24 hours and hot for 12. Leak-proof lid, ' +
      'powder-coated finish that does not sweat, fits most cup holders. Dishwasher safe. The wide mouth ' +
      'takes ice cubes and a cleaning brush; the lid carries a loop for a carabiner. Free of BPA and ' +
      'phthalates, and every part can be replaced on its own.',
    price: { amount: 2499 + (id % 100), currency: 'EUR' },
    stock: 1_000 - (id % 1_000),
    tags: ['kitchen', 'outdoor', 'bottles', 'gifts'],
    attributes: {
      capacity: '750 ml',
      material: '18/8 stainless steel',
      colour: 'forest green',
      weight: '340 g',
      height: '27 cm',
      warranty: 'lifetime',
      origin: 'assembled in Portugal',
      care: 'hand wash the lid',
    },
    images: [
      `https://img.example.com/products/${id}/front.jpg`,
      `https://img.example.com/products/${id}/side.jpg`,
      `https://img.example.com/products/${id}/lid.jpg`,
    ],
    rating: { average: 4.6, count: 1_284 },
    related: [id + 1, id + 2, id + 3, id + 5, id + 8, id + 13],
    updatedAt: '2025-01-15T10:20:30.000Z',
  }
}

export const PRODUCT_JSON_BYTES = Buffer.byteLength(JSON.stringify(product(1)))
