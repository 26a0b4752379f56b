import OpenAI from 'openai';

export const runtime = 'edge';

export const preferredRegion = [
  'sin1',
  'hkg1', // nearest to our users in Hong Kong
  'hnd1',
] as const;

export async function GET() {
  return Response.json(await new OpenAI().models.list());
}
