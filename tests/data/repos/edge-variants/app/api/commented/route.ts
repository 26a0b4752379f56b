import OpenAI from 'openai';

// export const runtime = 'edge';
/*
export const runtime = 'edge';
export const preferredRegion = 'auto';
*/
const note = "export const runtime = 'edge'"; // a string, not an export
const pattern = /\/\* not a comment start/;

export async function GET() {
  return Response.json({ note, ok: pattern.test('x'), models: await new OpenAI().models.list() });
}
