import OpenAI from 'openai';

export const runtime = 'edge';
export const preferredRegion = ['iad1', 'xyz1'];

export async function GET() {
  return Response.json(await new OpenAI().models.list());
}
