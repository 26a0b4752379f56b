import type { ChatCompletion } from 'openai/resources';

export const runtime = 'edge';

export async function POST(req: Request) {
  const completion = (await req.json()) as ChatCompletion;
  return Response.json({ id: completion.id });
}
