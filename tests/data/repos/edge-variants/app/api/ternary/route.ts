import OpenAI from 'openai';

export const runtime = 'edge';
export const preferredRegion =
  process.env.VERCEL_ENV === 'production'
    ? ['iad1', 'hkg1']
    : ['iad1'];

export async function GET() {
  return Response.json(await new OpenAI().models.list());
}
