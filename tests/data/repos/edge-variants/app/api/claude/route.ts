import Anthropic from '@anthropic-ai/sdk';

export const runtime = 'edge';

export async function POST(req: Request) {
  const { prompt } = await req.json();
  const msg = await new Anthropic().messages.create({
    model: 'claude-sonnet-4-5', max_tokens: 512, messages: [{ role: 'user', content: prompt }],
  });
  return Response.json(msg);
}
