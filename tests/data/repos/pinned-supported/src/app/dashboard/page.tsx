import { openai } from '../../lib/openai';
import { generateText } from 'ai';

// Inherits runtime and preferredRegion ('fra1') from ./layout.tsx.
export default async function Dashboard() {
  const { text } = await generateText({ model: openai('gpt-4o-mini'), prompt: 'Greet the user.' });
  return <h1>{text}</h1>;
}
