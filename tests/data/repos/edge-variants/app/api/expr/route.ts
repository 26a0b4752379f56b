import OpenAI from 'openai';

export const runtime = 'edge';
export const preferredRegion = REGIONS;

export async function GET() {
  return Response.json(await new OpenAI().models.list());
}
