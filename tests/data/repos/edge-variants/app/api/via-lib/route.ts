import { generateText } from 'ai';
import { model } from '../../../lib/ai';

export const runtime = 'edge';

export async function POST(req: Request) {
  const { prompt } = await req.json();
  const { text } = await generateText({ model, prompt });
  return new Response(text);
}
