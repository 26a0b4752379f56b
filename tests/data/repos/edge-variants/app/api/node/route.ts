import OpenAI from 'openai';

// No runtime export: Node.js, in the project's function region.
export async function GET() {
  return Response.json(await new OpenAI().models.list());
}
